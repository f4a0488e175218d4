"""One flask-smorest Blueprint per resource; views stay thin."""
