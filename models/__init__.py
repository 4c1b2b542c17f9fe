"""sleuth's model side: tokenizer, causal event encoder, training, scoring, explanations, baselines.

Takes pandas DataFrames in the event schema and returns dataclasses / arrays. Never imports
streamlit, duckdb or the analyst package (a test keeps that true).
"""
