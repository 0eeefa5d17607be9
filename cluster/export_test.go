package cluster

// SetOnHold makes f run as each call of c starts to wait in the client for
// a free worker.
func SetOnHold(c *Client, f func()) { c.onHold = f }
