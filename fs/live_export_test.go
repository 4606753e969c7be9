package fs

// LiveInterval is liveInterval, for the mount tests' request bounds.
const LiveInterval = liveInterval
