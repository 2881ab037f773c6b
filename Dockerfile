# The bot's image for Pipecat Cloud, on the base image Pipecat Cloud documents
# (it runs bot.py's `bot(runner_args)` for each session). Only what the bot needs:
# tests/test_bot_image.py builds its file list from the COPY lines below and
# imports bot.py with nothing else on the path and no Django.
FROM dailyco/pipecat-base:latest

COPY ./requirements-bot.txt requirements.txt
RUN pip install --no-cache-dir -r requirements.txt

COPY ./bot.py bot.py
COPY ./botkit/ botkit/
COPY ./botrunner/__init__.py botrunner/__init__.py
COPY ./botrunner/agent_request.py botrunner/agent_request.py
