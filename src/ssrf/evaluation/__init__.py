"""ssrf.evaluation"""
