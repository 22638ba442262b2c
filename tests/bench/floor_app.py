"""The bare stack, for floors: Flask behind a2wsgi under uvicorn, no Lumnar code."""

from a2wsgi import WSGIMiddleware
from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Mount

flask_app = Flask(__name__)


@flask_app.get("/healthz")
def hello():
    return "hello"


app = Starlette(routes=[Mount("/", WSGIMiddleware(flask_app))])
