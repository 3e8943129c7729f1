"""What tests across the parts share: waiting for a condition, where the Kubernetes API tests
run, and helpers for driving the whole local platform. Conftests hold fixtures only; anything a
test module imports comes from here."""
