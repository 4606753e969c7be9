package cbc

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// streamChunk is how much plaintext the streaming readers process at a time: large enough that AES-NI runs
// at memory speed, small enough to keep a multi-GiB stream's footprint constant.
const streamChunk = 256 << 10

// NewEncryptingReader returns a reader of the whole-file encryption of r (CBC from iv, PKCS#7 at the end).
// Memory use is constant whatever the size of r.
func NewEncryptingReader(r io.Reader, key, iv []byte) (io.Reader, error) {
	enc, err := NewEncrypter(key, iv)
	if err != nil {
		return nil, err
	}
	return &encryptingReader{src: r, enc: enc, in: make([]byte, streamChunk+BlockSize)}, nil
}

type encryptingReader struct {
	src  io.Reader
	enc  *Encrypter
	in   []byte // plaintext read ahead but not yet encrypted: in[:held]
	held int
	out  []byte // ciphertext not yet returned
	eof  bool   // the final part has been produced
	err  error  // a read error of src other than EOF, returned once out is drained
}

func (er *encryptingReader) Read(p []byte) (int, error) {
	for len(er.out) == 0 {
		if er.err != nil {
			return 0, er.err
		}
		if er.eof {
			return 0, io.EOF
		}
		er.fill()
	}
	n := copy(p, er.out)
	er.out = er.out[n:]
	return n, nil
}

// fill reads until it holds more than one chunk (so it knows whether the chunk is the last) or src ends,
// then encrypts what it can.
func (er *encryptingReader) fill() {
	n, err := io.ReadFull(er.src, er.in[er.held:])
	er.held += n
	switch {
	case err == nil:
		// Full buffer: encrypt all whole blocks but keep at least one byte back, because only the reader
		// that sees EOF may pad, and the padding goes on the part holding the last byte.
		whole := (er.held - 1) / BlockSize * BlockSize
		er.out, _ = er.enc.Part(er.in[:whole], false)
		er.held = copy(er.in, er.in[whole:er.held])
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		er.out, _ = er.enc.Part(er.in[:er.held], true)
		er.held, er.eof = 0, true
	default:
		er.err = err
	}
}

// NewDecryptingReader returns a reader of the plaintext of a whole CBC stream r of a file of plainSize
// bytes. Its buffer is no larger than the stream: a small file costs a small buffer (seeding 10,000
// small files spent most of its time allocating and clearing full-size buffers). It returns exactly plainSize bytes, then checks the padding; a stream that ends early, runs long
// or does not decrypt to valid padding gives an error instead of EOF.
func NewDecryptingReader(r io.Reader, key, iv []byte, plainSize int64) (io.Reader, error) {
	block, err := newCipher(key)
	if err != nil {
		return nil, err
	}
	if len(iv) != BlockSize {
		return nil, fmt.Errorf("cbc: IV is %d bytes, want %d", len(iv), BlockSize)
	}
	return &decryptingReader{src: r, dec: cipher.NewCBCDecrypter(block, iv), remaining: CiphertextSize(plainSize),
		plainLeft: plainSize, buf: make([]byte, min(streamChunk, CiphertextSize(plainSize)))}, nil
}

type decryptingReader struct {
	src       io.Reader
	dec       cipher.BlockMode
	remaining int64 // ciphertext bytes still to read from src
	plainLeft int64 // plaintext bytes still to return
	buf       []byte
	out       []byte
	err       error
}

func (dr *decryptingReader) Read(p []byte) (int, error) {
	for len(dr.out) == 0 {
		if dr.err != nil {
			return 0, dr.err
		}
		dr.fill()
	}
	n := copy(p, dr.out)
	dr.out = dr.out[n:]
	return n, nil
}

func (dr *decryptingReader) fill() {
	if dr.remaining == 0 {
		// Everything was decrypted; the source must be exhausted too.
		if n, _ := dr.src.Read(make([]byte, 1)); n > 0 {
			dr.err = errors.New("cbc: ciphertext longer than the file size says")
		} else {
			dr.err = io.EOF
		}
		return
	}
	want := min(int64(len(dr.buf)), dr.remaining)
	n, err := io.ReadFull(dr.src, dr.buf[:want])
	if err != nil {
		dr.err = fmt.Errorf("cbc: ciphertext ends %d bytes early: %w", dr.remaining-int64(n), io.ErrUnexpectedEOF)
		return
	}
	dr.remaining -= int64(n)
	chunk := dr.buf[:n]
	dr.dec.CryptBlocks(chunk, chunk)
	if dr.remaining == 0 {
		pad := CiphertextSize(dr.plainLeft) - dr.plainLeft // what the final chunk must end with
		if int64(len(chunk)) < pad {
			dr.err = ErrPadding
			return
		}
		for _, b := range chunk[int64(len(chunk))-pad:] {
			if int64(b) != pad {
				dr.err = ErrPadding
				return
			}
		}
		chunk = chunk[:int64(len(chunk))-pad]
	}
	dr.plainLeft -= int64(len(chunk))
	dr.out = chunk
}
