// Command crosscheck verifies gatekeeper's audit artifacts with Go's own
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog, so that the
// Python implementation (gatekeeper/audit/merkle.py, note.py) is checked by
// an independent one. tests/test_go_crosscheck.py builds and runs it.
//
// Usage:
//
//	crosscheck checkpoint <note-file> <vkey> [<vkey>...]
//	    Open the signed checkpoint with note.Open (every vkey must have
//	    signed), parse its C2SP tlog-checkpoint body; print "<size> <root>".
//	crosscheck tiles <dir> <vkey>
//	    Verify an exported C2SP tlog-tiles directory (checkpoint, tile/<L>/...,
//	    tile/entries/...): the checkpoint signature; the root recomputed from
//	    the entries with tlog.StoredHashes/tlog.TreeHash; every hash tile
//	    byte for byte (tlog.NewTiles, tlog.ReadTileData); every entry's leaf
//	    hash against the level-0 tiles read through tlog.TileHashReader, which
//	    authenticates the tiles against the checkpoint root.
//	crosscheck inclusion <size> <index> <root-b64> <record-b64> <proof-b64,...|->
//	    tlog.CheckRecord of the record (its bytes; Go computes RecordHash).
//	crosscheck consistency <size> <old-size> <root-b64> <old-root-b64> <proof-b64,...|->
//	    tlog.CheckTree.
//	crosscheck vectors
//	    Print, as JSON, the test vectors embedded in tests/test_merkle_vectors.py.
//
// Each command prints what it verified and exits 0, or prints the reason on
// stderr and exits 1 (2 for bad usage).
package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "checkpoint":
		if len(args) < 2 {
			usage()
		}
		err = cmdCheckpoint(args[0], args[1:])
	case "tiles":
		if len(args) != 2 {
			usage()
		}
		err = cmdTiles(args[0], args[1])
	case "inclusion":
		if len(args) != 5 {
			usage()
		}
		err = cmdInclusion(args)
	case "consistency":
		if len(args) != 5 {
			usage()
		}
		err = cmdConsistency(args)
	case "vectors":
		err = cmdVectors()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "crosscheck %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  crosscheck checkpoint <note-file> <vkey> [<vkey>...]
  crosscheck tiles <dir> <vkey>
  crosscheck inclusion <size> <index> <root-b64> <record-b64> <proof-b64,...|->
  crosscheck consistency <size> <old-size> <root-b64> <old-root-b64> <proof-b64,...|->
  crosscheck vectors
`)
	os.Exit(2)
}

// -- checkpoints --------------------------------------------------------------

type checkpoint struct {
	Origin     string
	Size       int64
	Root       tlog.Hash
	Extensions []string
}

var decimal = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

// parseCheckpoint parses a C2SP tlog-checkpoint body strictly: origin, size
// (decimal, no leading zero), base64 root hash, then non-empty extension
// lines, each ending in a newline. (tlog.ParseTree wants the go.sum
// database's own header line, so it cannot be used.)
func parseCheckpoint(text string) (checkpoint, error) {
	var c checkpoint
	if !strings.HasSuffix(text, "\n") {
		return c, errors.New("checkpoint does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return c, errors.New("checkpoint has fewer than three lines")
	}
	if lines[0] == "" {
		return c, errors.New("checkpoint has an empty origin")
	}
	c.Origin = lines[0]
	if !decimal.MatchString(lines[1]) {
		return c, fmt.Errorf("checkpoint size %q is not a decimal", lines[1])
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return c, fmt.Errorf("checkpoint size %q: %v", lines[1], err)
	}
	c.Size = size
	root, err := tlog.ParseHash(lines[2])
	if err != nil || root.String() != lines[2] {
		return c, fmt.Errorf("checkpoint root %q is not a base64 hash", lines[2])
	}
	c.Root = root
	for _, ext := range lines[3:] {
		if ext == "" {
			return c, errors.New("checkpoint has an empty extension line")
		}
		c.Extensions = append(c.Extensions, ext)
	}
	return c, nil
}

// openCheckpoint opens a signed checkpoint that every vkey must have signed,
// one of them being the log's key, named the checkpoint's origin.
func openCheckpoint(msg []byte, vkeys []string) (checkpoint, error) {
	var verifiers []note.Verifier
	for _, vkey := range vkeys {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return checkpoint{}, fmt.Errorf("verifier key %q: %v", vkey, err)
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		return checkpoint{}, err
	}
	for _, v := range verifiers {
		found := false
		for _, sig := range n.Sigs {
			found = found || sig.Name == v.Name() && sig.Hash == v.KeyHash()
		}
		if !found {
			return checkpoint{}, fmt.Errorf("not signed by %s+%08x", v.Name(), v.KeyHash())
		}
	}
	c, err := parseCheckpoint(n.Text)
	if err != nil {
		return checkpoint{}, err
	}
	byOrigin := false
	for _, sig := range n.Sigs {
		byOrigin = byOrigin || sig.Name == c.Origin
	}
	if !byOrigin {
		return checkpoint{}, fmt.Errorf("no verified signature by a key named the origin %q", c.Origin)
	}
	return c, nil
}

func cmdCheckpoint(file string, vkeys []string) error {
	msg, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	c, err := openCheckpoint(msg, vkeys)
	if err != nil {
		return err
	}
	fmt.Printf("%d %s\n", c.Size, c.Root)
	return nil
}

// -- tiles ----------------------------------------------------------------------

// tilePath is the C2SP tlog-tiles path of t: tile/<L>/<N>[.p/<W>], with
// L = -1 meaning the entry bundle tile/entries/<N>[.p/<W>]. Go's Tile.Path
// writes the sumdb layout (tile/<H>/<L>/...), so it cannot be used; the
// <N> encoding is the same.
func tilePath(t tlog.Tile) string {
	goPath := t.Path() // tile/8/<L or data>/<N>[.p/<W>]
	rest := strings.TrimPrefix(goPath, fmt.Sprintf("tile/%d/", t.H))
	level, nPart, _ := strings.Cut(rest, "/")
	if t.L == -1 {
		level = "entries"
	}
	return "tile/" + level + "/" + nPart
}

// memHashes is an in-memory tlog.HashReader over stored hashes.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m)) {
			return nil, fmt.Errorf("hash %d not stored", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

// dirTiles is a tlog.TileReader over a C2SP tiles directory.
type dirTiles struct{ dir string }

func (d dirTiles) Height() int { return tileHeight }

func (d dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := os.ReadFile(filepath.Join(d.dir, filepath.FromSlash(tilePath(t))))
		if err != nil && t.W < 1<<tileHeight {
			// A full tile serves any partial width (C2SP tlog-tiles).
			full := t
			full.W = 1 << tileHeight
			if fdata, ferr := os.ReadFile(filepath.Join(d.dir, filepath.FromSlash(tilePath(full)))); ferr == nil {
				data, err = fdata[:min(len(fdata), t.W*tlog.HashSize)], nil
			}
		}
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (d dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// readBundle parses an entry bundle: entries, each prefixed by its length
// as a big-endian uint16.
func readBundle(data []byte, want int) ([][]byte, error) {
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("truncated length prefix")
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, errors.New("truncated entry")
		}
		entries = append(entries, data[2:2+n])
		data = data[2+n:]
	}
	if len(entries) != want {
		return nil, fmt.Errorf("%d entries, want %d", len(entries), want)
	}
	return entries, nil
}

func cmdTiles(dir, vkey string) error {
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		return err
	}
	c, err := openCheckpoint(msg, []string{vkey})
	if err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	n := c.Size
	tiles := tlog.NewTiles(tileHeight, 0, n)

	// 1. The entries, from the entry bundles (the level-0 tile coordinates).
	var records [][]byte
	for _, t := range tiles {
		if t.L != 0 {
			continue
		}
		bundle := tlog.Tile{H: t.H, L: -1, N: t.N, W: t.W}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(tilePath(bundle))))
		if err != nil {
			return err
		}
		entries, err := readBundle(data, t.W)
		if err != nil {
			return fmt.Errorf("%s: %v", tilePath(bundle), err)
		}
		records = append(records, entries...)
	}
	if int64(len(records)) != n {
		return fmt.Errorf("entry bundles hold %d entries, checkpoint size is %d", len(records), n)
	}

	// 2. The root recomputed from the entries equals the checkpoint's.
	var stored memHashes
	for i, rec := range records {
		hashes, err := tlog.StoredHashes(int64(i), rec, stored)
		if err != nil {
			return err
		}
		stored = append(stored, hashes...)
	}
	root, err := tlog.TreeHash(n, stored)
	if err != nil {
		return err
	}
	if root != c.Root {
		return fmt.Errorf("entries hash to root %s, checkpoint says %s", root, c.Root)
	}

	// 3. Every hash tile, byte for byte.
	for _, t := range tiles {
		want, err := tlog.ReadTileData(t, stored)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(tilePath(t))))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s: tile data differs from the tree of the entries", tilePath(t))
		}
	}

	// 4. Through Go's authenticating tile reader: the tree hash, and every
	// entry's leaf hash against the level-0 tiles.
	thr := tlog.TileHashReader(tlog.Tree{N: n, Hash: c.Root}, dirTiles{dir})
	if n > 0 {
		th, err := tlog.TreeHash(n, thr)
		if err != nil {
			return fmt.Errorf("tree hash from tiles: %v", err)
		}
		if th != c.Root {
			return fmt.Errorf("tiles hash to root %s, checkpoint says %s", th, c.Root)
		}
	}
	for start := int64(0); start < n; start += 1 << tileHeight {
		end := min(start+1<<tileHeight, n)
		var indexes []int64
		for i := start; i < end; i++ {
			indexes = append(indexes, tlog.StoredHashIndex(0, i))
		}
		leaves, err := thr.ReadHashes(indexes)
		if err != nil {
			return fmt.Errorf("leaf hashes %d..%d from tiles: %v", start, end-1, err)
		}
		for i, leaf := range leaves {
			if want := tlog.RecordHash(records[start+int64(i)]); leaf != want {
				return fmt.Errorf("entry %d: leaf hash %s in the tiles, entry hashes to %s", start+int64(i), leaf, want)
			}
		}
	}
	fmt.Printf("ok %d entries, %d tiles, root %s\n", n, len(tiles), c.Root)
	return nil
}

// -- proofs -----------------------------------------------------------------------

func parseHashes(csv string) ([]tlog.Hash, error) {
	if csv == "-" || csv == "" {
		return nil, nil
	}
	var out []tlog.Hash
	for _, s := range strings.Split(csv, ",") {
		h, err := tlog.ParseHash(s)
		if err != nil {
			return nil, fmt.Errorf("proof hash %q: %v", s, err)
		}
		out = append(out, h)
	}
	return out, nil
}

func cmdInclusion(args []string) error {
	size, err1 := strconv.ParseInt(args[0], 10, 64)
	index, err2 := strconv.ParseInt(args[1], 10, 64)
	root, err3 := tlog.ParseHash(args[2])
	record, err4 := base64.StdEncoding.DecodeString(args[3])
	proof, err5 := parseHashes(args[4])
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return err
	}
	if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash(record)); err != nil {
		return err
	}
	fmt.Printf("ok record %d in tree %d\n", index, size)
	return nil
}

func cmdConsistency(args []string) error {
	size, err1 := strconv.ParseInt(args[0], 10, 64)
	oldSize, err2 := strconv.ParseInt(args[1], 10, 64)
	root, err3 := tlog.ParseHash(args[2])
	oldRoot, err4 := tlog.ParseHash(args[3])
	proof, err5 := parseHashes(args[4])
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return err
	}
	if err := tlog.CheckTree(proof, size, root, oldSize, oldRoot); err != nil {
		return err
	}
	fmt.Printf("ok tree %d extends tree %d\n", size, oldSize)
	return nil
}

// -- vectors ----------------------------------------------------------------------

// The leaf inputs of the RFC 6962 reference test data (certificate-transparency,
// transparency-dev/merkle).
var rfcLeaves = []string{
	"",
	"00",
	"10",
	"2021",
	"3031",
	"40414243",
	"5051525354555657",
	"606162636465666768696a6b6c6d6e6f",
}

func hexes(hs []tlog.Hash) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, hex.EncodeToString(h[:]))
	}
	return out
}

// signerFromSeed makes a note signer from a fixed Ed25519 seed, through the
// encoded private key form that note.NewSigner parses.
func signerFromSeed(name string, seed []byte) (note.Signer, string, string, error) {
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return nil, "", "", err
	}
	parts := strings.Split(vkey, "+")
	skey := "PRIVATE+KEY+" + name + "+" + parts[1] + "+" +
		base64.StdEncoding.EncodeToString(append([]byte{1}, seed...))
	s, err := note.NewSigner(skey)
	return s, skey, vkey, err
}

func sign(text string, signers ...note.Signer) (string, error) {
	msg, err := note.Sign(&note.Note{Text: text}, signers...)
	return string(msg), err
}

func cmdVectors() error {
	type inclusionVector struct {
		Size  int64    `json:"size"`
		Index int64    `json:"index"`
		Proof []string `json:"proof"`
	}
	type consistencyVector struct {
		Size    int64    `json:"size"`
		OldSize int64    `json:"old_size"`
		Proof   []string `json:"proof"`
	}
	out := struct {
		LeafHashes      []string            `json:"leaf_hashes"`
		Roots           []string            `json:"roots"`
		Inclusion       []inclusionVector   `json:"inclusion"`
		Consistency     []consistencyVector `json:"consistency"`
		StoredHashIndex [][3]int64          `json:"stored_hash_index"`
		StoredHashCount []int64             `json:"stored_hash_count"`
		NewTiles        [][]any             `json:"new_tiles"`
		Notes           map[string]string   `json:"notes"`
	}{Notes: map[string]string{}}

	var stored memHashes
	empty, err := tlog.TreeHash(0, stored)
	if err != nil {
		return err
	}
	out.Roots = append(out.Roots, hex.EncodeToString(empty[:]))
	for i, lx := range rfcLeaves {
		data, _ := hex.DecodeString(lx)
		leaf := tlog.RecordHash(data)
		out.LeafHashes = append(out.LeafHashes, hex.EncodeToString(leaf[:]))
		hashes, err := tlog.StoredHashes(int64(i), data, stored)
		if err != nil {
			return err
		}
		stored = append(stored, hashes...)
		root, err := tlog.TreeHash(int64(i+1), stored)
		if err != nil {
			return err
		}
		out.Roots = append(out.Roots, hex.EncodeToString(root[:]))
	}
	for t := int64(1); t <= int64(len(rfcLeaves)); t++ {
		for n := int64(0); n < t; n++ {
			p, err := tlog.ProveRecord(t, n, stored)
			if err != nil {
				return err
			}
			out.Inclusion = append(out.Inclusion, inclusionVector{Size: t, Index: n, Proof: hexes(p)})
		}
		for n := int64(1); n <= t; n++ {
			p, err := tlog.ProveTree(t, n, stored)
			if err != nil {
				return err
			}
			out.Consistency = append(out.Consistency, consistencyVector{Size: t, OldSize: n, Proof: hexes(p)})
		}
	}
	for _, ln := range [][2]int64{{0, 0}, {0, 1}, {1, 0}, {0, 2}, {0, 3}, {2, 0}, {0, 1000}, {3, 77}, {8, 4095}, {20, 123456}} {
		out.StoredHashIndex = append(out.StoredHashIndex, [3]int64{ln[0], ln[1], tlog.StoredHashIndex(int(ln[0]), ln[1])})
	}
	for n := int64(0); n <= 20; n++ {
		out.StoredHashCount = append(out.StoredHashCount, tlog.StoredHashCount(n))
	}

	for _, sizes := range [][2]int64{{0, 1}, {0, 256}, {0, 700}, {256, 700}, {700, 700}, {0, 65793}, {700, 70000}} {
		var ts [][3]int
		for _, t := range tlog.NewTiles(tileHeight, sizes[0], sizes[1]) {
			ts = append(ts, [3]int{t.L, int(t.N), t.W})
		}
		out.NewTiles = append(out.NewTiles, []any{sizes[0], sizes[1], ts})
	}

	// Go's sumdb/note documentation and tests: PeterNeumann's encoded key, and
	// EnochRoot's (the key GenerateKey makes from an all-zero seed).
	peter, err := note.NewSigner("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
	if err != nil {
		return err
	}
	enoch, enochSkey, enochVkey, err := signerFromSeed("EnochRoot", make([]byte, 32))
	if err != nil {
		return err
	}
	text := "If you think cryptography is the answer to your problem,\n" +
		"then you don't know what your problem is.\n"
	out.Notes["enoch_skey"] = enochSkey
	out.Notes["enoch_vkey"] = enochVkey
	if out.Notes["peter"], err = sign(text, peter); err != nil {
		return err
	}
	if out.Notes["peter_enoch"], err = sign(text, peter, enoch); err != nil {
		return err
	}

	// A C2SP checkpoint of the 8-leaf tree, signed by a fixed key, then
	// co-signed by that key and its successor (a key rotation).
	seed1, seed2 := make([]byte, 32), make([]byte, 32)
	for i := range seed1 {
		seed1[i], seed2[i] = byte(i), byte(32+i)
	}
	const origin = "example.com/audit"
	log1, skey1, vkey1, err := signerFromSeed(origin, seed1)
	if err != nil {
		return err
	}
	log2, skey2, vkey2, err := signerFromSeed(origin, seed2)
	if err != nil {
		return err
	}
	root8, _ := hex.DecodeString(out.Roots[8])
	body := fmt.Sprintf("%s\n%d\n%s\n", origin, 8, base64.StdEncoding.EncodeToString(root8))
	out.Notes["log_skey1"], out.Notes["log_vkey1"] = skey1, vkey1
	out.Notes["log_skey2"], out.Notes["log_vkey2"] = skey2, vkey2
	if out.Notes["checkpoint"], err = sign(body, log1); err != nil {
		return err
	}
	if out.Notes["checkpoint_cosigned"], err = sign(body, log2, log1); err != nil {
		return err
	}
	if out.Notes["checkpoint_extension"], err = sign(body+"extension line\n", log1); err != nil {
		return err
	}

	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	return enc.Encode(out)
}
