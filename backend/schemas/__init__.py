"""marshmallow schemas: Create / Update / Public / QueryArgs per resource."""
