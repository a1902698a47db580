"""Return the variables it was called with; handy to see what a route renders."""


def run(**variables: object) -> dict[str, object]:
    print(f"echo: {sorted(variables)}")
    return variables
