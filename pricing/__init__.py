"""GPU prices: provider fetchers (httpx), GPU-name normalisation and cost maths.

Never imports Textual, the tui package or the data package (data imports pricing, not the reverse).
"""
