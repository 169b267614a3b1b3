"""ssrf.serving"""
