"""Helpers for ``bot.py`` (the Pipecat bot process).

Nothing in this package imports Django or our apps: the bot runs on Pipecat
Cloud, far from our database, and knows only its ``AgentRequest``.
"""
