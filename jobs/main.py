"""Entry point of the Huey consumer: `huey_consumer jobs.main.huey`.

It builds the Flask app (configuration, database, mail settings) and imports every task
module so the consumer knows all tasks.
"""

from app import create_app
from jobs import huey  # noqa: F401  (the consumer reads jobs.main.huey; jobs imports every task module)

app = create_app()
