from mfhq.cli import app

app()
