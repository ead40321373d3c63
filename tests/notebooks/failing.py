"""Script task that fails."""
print("starting")


def parse(text):
    return int(text)


parse("not-a-number")
