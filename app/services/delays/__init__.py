"""Delays: the delay sweep (sweep.candidates, then sweep.run), the route model that predicts
milestones and ETAs (routes), when each case next needs a look (checks), and the one table of
legs and their targets (targets)."""
