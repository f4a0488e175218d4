"""Business rules shared by routes and tasks; services own the commits."""
