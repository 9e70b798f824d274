from modelcrunch.cli.app import main

main()
