from lccm.cli import app

app(prog_name="lccm")
