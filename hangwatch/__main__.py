from hangwatch.cli import main

main()
