from shop.cli import app

app(prog_name="shop")
