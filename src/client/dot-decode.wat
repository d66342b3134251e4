;; RFC 1939 §3 multi-line decoding of a RETR/TOP body, the hot loop of a large download (src/client/lfDecoder.ts,
;; LfDecoder, which keeps the state between chunks; src/protocol/dot.ts DotDecoder defines the rules):
;;   - a '.' at the start of a line (after an LF) is dropped (dot-unstuffing), unless it is followed by CR LF:
;;     then it is the terminator, and decoding stops after its LF;
;;   - with $lf = 1, a CR followed by LF is dropped (CRLF → LF, the stored form of Maildir and mbox); a CR not
;;     followed by LF is data.
;; Every other byte is copied. The function keeps no state: the byte before src (mem[src - 1]) tells whether
;; src starts a line, and bytes that cannot be decided before more input comes ('.', ".\r" at a line start, a
;; CR in lf mode, at the very end) are left unconsumed for the caller to put in front of the next chunk.
;;
;; 16 bytes at a time: one block's "events" are the bytes to drop (line-start dots, and CRs of CRLFs in lf mode).
;; A block with at most one event that is not the terminator (nearly every block of text: one CRLF per line)
;; takes a path without branches on the data: the block is stored, and the bytes after the event stored again
;; one position earlier. Anything else goes one event at a time; the last < 18 bytes go one byte at a time.
;;
;; Assembled into src/client/dotDecodeWasm.ts by WABT's wat2wasm: `node scripts/build-wasm.mjs`.
(module
  (memory (export "memory") 1)

  ;; decode(src, n, dst, lf) → bytes written at dst (at most n).
  ;; mem[src - 1]: the byte before src in the body (LF at its start). Results at address 0: i32 consumed (bytes of
  ;; src..src+n used; on done, up to and including the terminator's LF), i32 done (1 once the terminator was
  ;; read). Up to 32 bytes after src + n are read and ignored; up to 32 bytes after the output may be written
  ;; with garbage.
  (func (export "decode") (param $src i32) (param $n i32) (param $dst i32) (param $lf i32) (result i32)
    (local $i i32) (local $end i32) (local $o i32) (local $m i32) (local $t i32) (local $p i32) (local $b i32)
    (local $done i32)
    (local $v v128) (local $v1 v128) (local $dots v128) (local $lfs v128) (local $crs v128) (local $dotc v128)
    (local $keep v128)
    local.get $src
    local.set $i
    local.get $src
    local.get $n
    i32.add
    local.set $end
    local.get $dst
    local.set $o
    i32.const 10
    i8x16.splat
    local.set $lfs
    i32.const 13
    i8x16.splat
    local.set $crs
    i32.const 46
    i8x16.splat
    local.set $dotc
    ;; all ones in lf mode, zero otherwise: masks the CR events
    i32.const 0
    local.get $lf
    i32.sub
    i8x16.splat
    local.set $keep
    block $out
      loop $next
        local.get $end
        local.get $i
        i32.sub
        i32.const 18
        i32.ge_u
        if
          ;; A whole block, with the byte before it and two after it. v = mem[i..i+16), v1 = mem[i+1..i+17).
          local.get $i
          v128.load
          local.set $v
          local.get $i
          v128.load offset=1
          local.set $v1
          ;; dots: '.' after an LF
          local.get $i
          i32.const 1
          i32.sub
          v128.load
          local.get $lfs
          i8x16.eq
          local.get $v
          local.get $dotc
          i8x16.eq
          v128.and
          local.tee $dots
          ;; CRs before an LF, in lf mode
          local.get $v
          local.get $crs
          i8x16.eq
          local.get $v1
          local.get $lfs
          i8x16.eq
          v128.and
          local.get $keep
          v128.and
          v128.or
          i8x16.bitmask
          local.set $m
          ;; terminators: such a dot followed by CR LF
          local.get $dots
          local.get $v1
          local.get $crs
          i8x16.eq
          v128.and
          local.get $i
          v128.load offset=2
          local.get $lfs
          i8x16.eq
          v128.and
          i8x16.bitmask
          local.set $t
          local.get $t
          i32.eqz
          local.get $m
          local.get $m
          i32.const 1
          i32.sub
          i32.and
          i32.eqz
          i32.and
          if
            ;; No terminator, at most one event: drop the byte at p (p = 16: nothing to drop).
            local.get $m
            i32.const 65536
            i32.or
            i32.ctz
            local.set $p
            local.get $o
            local.get $v
            v128.store
            local.get $o
            local.get $p
            i32.add
            local.get $i
            local.get $p
            i32.add
            v128.load offset=1
            v128.store
            local.get $o
            i32.const 16
            i32.add
            local.get $m
            i32.const 0
            i32.ne
            i32.sub
            local.set $o
            local.get $i
            i32.const 16
            i32.add
            local.set $i
            br $next
          end
          ;; Several events, or a terminator: copy up to the first event and deal with it.
          local.get $m
          i32.ctz
          local.set $p
          local.get $o
          local.get $v
          v128.store
          local.get $o
          local.get $p
          i32.add
          local.set $o
          local.get $i
          local.get $p
          i32.add
          local.set $i
          local.get $t
          i32.const 1
          local.get $p
          i32.shl
          i32.and
          if
            local.get $i
            i32.const 3
            i32.add
            local.set $i
            i32.const 1
            local.set $done
            br $out
          end
          local.get $i
          i32.const 1
          i32.add
          local.set $i
          br $next
        end
        ;; The last bytes, one at a time.
        local.get $i
        local.get $end
        i32.ge_u
        br_if $out
        local.get $i
        i32.load8_u
        local.set $b
        local.get $b
        i32.const 46
        i32.eq
        local.get $i
        i32.const 1
        i32.sub
        i32.load8_u
        i32.const 10
        i32.eq
        i32.and
        if
          ;; A '.' starting a line: the terminator, or a stuffed dot; wait for the bytes that tell.
          local.get $i
          i32.const 1
          i32.add
          local.get $end
          i32.ge_u
          br_if $out
          local.get $i
          i32.load8_u offset=1
          i32.const 13
          i32.eq
          if
            local.get $i
            i32.const 2
            i32.add
            local.get $end
            i32.ge_u
            br_if $out
            local.get $i
            i32.load8_u offset=2
            i32.const 10
            i32.eq
            if
              local.get $i
              i32.const 3
              i32.add
              local.set $i
              i32.const 1
              local.set $done
              br $out
            end
          end
          local.get $i
          i32.const 1
          i32.add
          local.set $i
          br $next
        end
        local.get $lf
        local.get $b
        i32.const 13
        i32.eq
        i32.and
        if
          ;; A CR: dropped before an LF; wait for the byte that tells.
          local.get $i
          i32.const 1
          i32.add
          local.get $end
          i32.ge_u
          br_if $out
          local.get $i
          i32.load8_u offset=1
          i32.const 10
          i32.eq
          if
            local.get $i
            i32.const 1
            i32.add
            local.set $i
            br $next
          end
        end
        local.get $o
        local.get $b
        i32.store8
        local.get $o
        i32.const 1
        i32.add
        local.set $o
        local.get $i
        i32.const 1
        i32.add
        local.set $i
        br $next
      end
    end
    i32.const 0
    local.get $i
    local.get $src
    i32.sub
    i32.store
    i32.const 4
    local.get $done
    i32.store
    local.get $o
    local.get $dst
    i32.sub
  )
)
