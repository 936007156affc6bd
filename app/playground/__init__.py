"""The playground: chat with several served models side by side, blind votes, batch comparisons."""
