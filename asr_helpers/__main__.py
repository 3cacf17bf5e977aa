from asr_helpers.tools.cli import main

main()
