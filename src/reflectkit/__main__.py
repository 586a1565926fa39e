from reflectkit.cli import main

main()
