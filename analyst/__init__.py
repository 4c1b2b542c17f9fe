"""sleuth's analyst side: store, ingest, synthetic data, service, CLI and the Streamlit views."""
