from fsp.cli import main

main()
