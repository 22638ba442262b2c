"""The customer's dashboard shell: navigation and the areas not yet built."""
