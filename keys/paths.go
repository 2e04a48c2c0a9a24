package keys

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/regdr/regdr/internal/store"
)

// Paths names the etcd keys of key transport under a regdr prefix.
type Paths struct{ Prefix string }

// PathsFor derives Paths from the store's key namer.
func PathsFor(k store.Keys) Paths {
	p := strings.TrimRight(k.Prefix, "/")
	if p == "" {
		p = store.DefaultPrefix
	}
	return Paths{Prefix: p}
}

func (p Paths) base() string { return p.Prefix + "/keys/" }

// Bundles is the prefix of every bundle addressed to site to.
func (p Paths) Bundles(to string) string { return p.base() + "bundles/" + url.PathEscape(to) + "/" }

// BundlesFrom is the prefix of bundles from one site to another.
func (p Paths) BundlesFrom(to, from string) string { return p.Bundles(to) + url.PathEscape(from) + "/" }

// Bundle is one bundle. Seqs are zero-padded to 20 digits so key order is
// sequence order.
func (p Paths) Bundle(to, from string, seq uint64) string {
	return fmt.Sprintf("%s%020d", p.BundlesFrom(to, from), seq)
}

// ParseBundle splits a bundle key into to, from and seq.
func (p Paths) ParseBundle(key string) (to, from string, seq uint64, ok bool) {
	rest, found := strings.CutPrefix(key, p.base()+"bundles/")
	if !found {
		return "", "", 0, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || len(parts[2]) != 20 {
		return "", "", 0, false
	}
	var err error
	if to, err = url.PathUnescape(parts[0]); err != nil {
		return "", "", 0, false
	}
	if from, err = url.PathUnescape(parts[1]); err != nil {
		return "", "", 0, false
	}
	if seq, err = strconv.ParseUint(parts[2], 10, 64); err != nil {
		return "", "", 0, false
	}
	return to, from, seq, true
}

// SentSeq is the sender's counter of bundles from one site to another.
func (p Paths) SentSeq(to, from string) string {
	return p.base() + "seq/" + url.PathEscape(to) + "/" + url.PathEscape(from) + "/sent"
}

// AcceptedSeq is the last bundle seq the receiver accepted from a sender.
func (p Paths) AcceptedSeq(to, from string) string {
	return p.base() + "seq/" + url.PathEscape(to) + "/" + url.PathEscape(from) + "/accepted"
}

// Receipts is the prefix of every receipt of site.
func (p Paths) Receipts(site string) string {
	return p.base() + "receipts/" + url.PathEscape(site) + "/"
}

// ZoneReceipts is the prefix of site's receipts for zone.
func (p Paths) ZoneReceipts(site, zone string) string {
	return p.Receipts(site) + url.PathEscape(store.CanonicalZone(zone)) + "/"
}

// Receipt is site's receipt for the key of zone with tag.
func (p Paths) Receipt(site, zone string, tag uint16) string {
	return fmt.Sprintf("%s%05d", p.ZoneReceipts(site, zone), tag)
}

// AllReceipts is the prefix of every receipt.
func (p Paths) AllReceipts() string { return p.base() + "receipts/" }

// Inventory is where site's agent publishes the public facts of its keys.
func (p Paths) Inventory(site string) string { return p.Inventories() + url.PathEscape(site) }

// Inventories is the prefix of every site's inventory.
func (p Paths) Inventories() string { return p.base() + "inventory/" }
