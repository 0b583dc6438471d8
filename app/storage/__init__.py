"""Storage: where endpoints and captures live. TODO"""
