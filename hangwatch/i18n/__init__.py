"""Languages of what people read: the glossary, display names and sentences (glossary.yaml, data
a bank can edit or override with the `glossary_file` setting), and the sentences of flag and
alert explanations rendered from the records' facts (explain.py).

    words = words_for(settings)              # the configured language (settings.language)
    words = words_for(settings, "en")        # or a chosen one
    words.term("hangup_rate")                # 挂断率
    words.name("branch", "shanghai-pudong")  # 上海浦东 (unknown codes are shown as they are)
    words.text("report.note.points", minutes=5)
"""

from __future__ import annotations

from hangwatch.i18n.glossary import LANGUAGES, Glossary, GlossaryError, Words, load_glossary, words_for

__all__ = ["LANGUAGES", "Glossary", "GlossaryError", "Words", "load_glossary", "words_for"]
