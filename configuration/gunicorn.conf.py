"""Gunicorn settings for production: ``gunicorn -c configuration/gunicorn.conf.py 'app:create_app()'``.

The defaults live in ``nectar.gunicorn_conf`` (also what ``nectar serve`` uses); override here.
"""

from nectar.gunicorn_conf import *  # noqa: F403

# e.g. listen on every interface behind your proxy, with more workers:
# bind = "0.0.0.0:5000"
# workers = 4
