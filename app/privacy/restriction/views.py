"""Restriction, objection and retention routes."""

from flask import Blueprint

bp = Blueprint("restriction", __name__)
