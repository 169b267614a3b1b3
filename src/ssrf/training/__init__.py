"""ssrf.training"""
