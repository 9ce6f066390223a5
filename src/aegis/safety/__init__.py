"""Safety flags and the review queue: what the AI saw or proposed that a human should look at."""
