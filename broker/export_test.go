package broker

// WithPasswordCheck makes a hub compare passwords with check instead of
// bcrypt, so that a test can hold password checks in flight or count
// them; everything else of the login (the user store, the gate, the
// failure delay) stays real.
func WithPasswordCheck(check func(hash, password []byte) bool) func(*Config) {
	return func(c *Config) { c.passwordCheck = check }
}
