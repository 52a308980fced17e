from pipeline_engine.cli import main

main()
