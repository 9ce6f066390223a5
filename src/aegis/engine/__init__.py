"""The AI engine: detectors, recommender, and the batched inference server."""
