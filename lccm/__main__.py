from lccm.cli import run

run()
