"""The paper's CTR comparison models framed as next-item recommenders: each scores (user, recent history,
candidate) examples over their fields (`fields`), and ranks the whole catalogue by splitting its
computation into a query side and a candidate side."""
