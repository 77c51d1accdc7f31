"""Files for people: the borrower flag review / re-dial list (review.py: rows in the chosen
language from flag_review_list) written as XLSX or CSV that Excel and WPS open cleanly
(writers.py: ids as text, local date-times as real dates, CSV in UTF-8 with a BOM)."""

from hangwatch.exports.review import ReviewList, review_list
from hangwatch.exports.writers import FORMATS, write

__all__ = ["FORMATS", "ReviewList", "review_list", "write"]
