package tier1

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/chronik-go/chronik/internal/vfs"
)

// DefaultSegmentBytes is the segment roll threshold when
// Config.SegmentBytes is zero.
var DefaultSegmentBytes int64 = 128 << 20

// minSegmentBytes keeps tests able to roll often while refusing sizes that
// could not hold a header and a small frame.
const minSegmentBytes = 1 << 10

// maxGroupBytes caps the bytes in one write (and so the write buffer the
// commit goroutine keeps). A single larger entry is still written alone.
const maxGroupBytes = 16 << 20

// Profiles from DESIGN.md's Tier 1 table. The memory bounds, written there
// as ~25 MB etc., are binary megabytes here.
var profiles = []Profile{
	{Name: "low", QueueDepth: 2_500, MaxGroup: 5_000, MaxWait: 20 * time.Millisecond, MemoryBytes: 25 << 20},
	{Name: "medium", QueueDepth: 10_000, MaxGroup: 15_000, MaxWait: 10 * time.Millisecond, MemoryBytes: 100 << 20},
	{Name: "high", QueueDepth: 50_000, MaxGroup: 50_000, MaxWait: 100 * time.Millisecond, MemoryBytes: 500 << 20},
	{Name: "ultra", QueueDepth: 100_000, MaxGroup: 100_000, MaxWait: 100 * time.Millisecond, MemoryBytes: 1 << 30},
}

// Profiles returns a copy of the WAL profiles, smallest first.
func Profiles() []Profile { return append([]Profile(nil), profiles...) }

// DefaultProfileName is the profile used when none is configured.
const DefaultProfileName = "medium"

// ProfileByName returns the named WAL profile (low, medium, high, ultra;
// case and surrounding spaces are ignored).
func ProfileByName(name string) (Profile, error) {
	want := strings.ToLower(strings.TrimSpace(name))
	names := make([]string, len(profiles))
	for i, p := range profiles {
		if p.Name == want {
			return p, nil
		}
		names[i] = p.Name
	}
	return Profile{}, fmt.Errorf("%w: unknown WAL profile %q (valid: %s)",
		ErrConfig, name, strings.Join(names, ", "))
}

// DefaultConfig returns a Config for dir with the default profile,
// FsyncAlways and default segment size on the OS filesystem.
func DefaultConfig(dir string) Config {
	p, _ := ProfileByName(DefaultProfileName)
	return Config{Dir: dir, FS: vfs.Default, Profile: p, SegmentBytes: DefaultSegmentBytes}
}

// Validate reports the first setting that cannot work. A zero Profile,
// FS, SegmentBytes or Logger is valid: Open fills in the default.
func (c Config) Validate() error {
	p := c.Profile
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	switch {
	case c.Dir == "":
		return bad("Dir is empty")
	case c.Fsync != FsyncAlways && c.Fsync != FsyncNever:
		return bad("Fsync mode %d is neither FsyncAlways nor FsyncNever", c.Fsync)
	case c.SegmentBytes != 0 && c.SegmentBytes < minSegmentBytes:
		return bad("SegmentBytes %d is below the minimum %d", c.SegmentBytes, minSegmentBytes)
	case c.MaxWait < 0:
		return bad("MaxWait %v is negative", c.MaxWait)
	case p == Profile{}:
		return nil
	case p.QueueDepth < 1:
		return bad("Profile %q: QueueDepth %d must be at least 1", p.Name, p.QueueDepth)
	case p.MaxGroup < 1:
		return bad("Profile %q: MaxGroup %d must be at least 1", p.Name, p.MaxGroup)
	case p.MemoryBytes < 1:
		return bad("Profile %q: MemoryBytes %d must be at least 1", p.Name, p.MemoryBytes)
	case p.MaxWait < 0:
		return bad("Profile %q: MaxWait %v is negative", p.Name, p.MaxWait)
	}
	return nil
}

// withDefaults validates c and fills in its zero fields.
func (c Config) withDefaults() (Config, error) {
	if err := c.Validate(); err != nil {
		return c, err
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Profile == (Profile{}) {
		c.Profile, _ = ProfileByName(DefaultProfileName)
	}
	if c.MaxWait > 0 {
		c.Profile.MaxWait = c.MaxWait
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
