"""Pure ingestion: bytes in, typed text, chunks and vectors out. No Django, no database.

    kind = filetypes.detect_type(data, filename)          # at upload time: 4xx on IngestError
    extracted = extract.extract(data, kind)               # in the job
    chunks = chunking.chunk_text(extracted.text, extracted.pages)
    vectors = embedding.get_embedder("minilm-onnx").embed([c.text for c in chunks])

Every failure is an ``errors.IngestError`` with a machine-readable ``code`` and a message safe
to show a user. Nothing is re-exported here, so that importing ``filetypes`` in a web process
does not load the PDF, Word and HTML parsers or onnxruntime.
"""
