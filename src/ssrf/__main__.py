from ssrf.cli import main

main()
