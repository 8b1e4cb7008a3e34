"""``python -m speech_analysis_client``: the command-line client."""

from speech_analysis_client.cli import run

run()
