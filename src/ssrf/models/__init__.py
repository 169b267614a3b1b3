"""ssrf.models"""
