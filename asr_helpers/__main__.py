from asr_helpers.cli import main

main()
