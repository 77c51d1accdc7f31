module hangwatch.test/gotemplate

go 1.22
