from distill.run import cli

cli()
