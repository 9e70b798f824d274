from modelcrunch.cli.entry import main

main()
