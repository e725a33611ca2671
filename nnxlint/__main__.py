from nnxlint.cli import main

main()
