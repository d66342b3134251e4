;; RFC 1939 §3 multi-line encoding of stored message bytes, the hot loop of a large RETR (src/protocol/dot.ts,
;; DotEncoder, which defines the rules and keeps a plain JavaScript version of the same loop):
;;   - an LF not preceded by CR gets a CR in front of it (bare LF → CRLF); a CR alone is data;
;;   - a '.' at the start of a line (the start of the message, or after an LF) gets one more '.'.
;; 16 bytes at a time: one SIMD compare finds the LFs of a block. A block with no LF, or with one LF and no '.'
;; after it (nearly every block of text, LF- or CRLF-stored), takes a path without branches on the data: the
;; block is stored and, for a bare LF, a CR written where the LF was and the bytes from the LF on stored again
;; one further. Anything else (two LFs, a '.' after the LF, the chunk's first block) goes through the general
;; step, one LF at a time.
;; (Branching on "is there an LF in this block" mispredicted about once per line and halved the rate.)
;;
;; Assembled into src/protocol/dotEncodeWasm.ts by WABT's wat2wasm: `node scripts/build-wasm.mjs`.
(module
  (memory (export "memory") 1)

  ;; encode(src, n, dst, prev) → bytes written at dst.
  ;; src..src+n: stored bytes; prev: the byte before src in the message (-1 at its start).
  ;; dst must have room for 2·n + 33 bytes: every byte may double, one '.' may lead, and block stores may
  ;; write up to 32 bytes past the end of the output (garbage there is never read). Up to 32 bytes after
  ;; src + n are read (and ignored) too, so they must be inside the memory.
  (func (export "encode") (param $src i32) (param $n i32) (param $dst i32) (param $prev i32) (result i32)
    (local $i i32) (local $end i32) (local $o i32) (local $m i32) (local $b i32) (local $v v128) (local $lf v128)
    (local $j i32) (local $has i32) (local $ins i32)
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
    local.set $lf
    ;; A '.' first in the chunk, at the start of a line, is stuffed here (later ones after each LF below).
    local.get $n
    if
      local.get $prev
      i32.const 10
      i32.eq
      local.get $prev
      i32.const -1
      i32.eq
      i32.or
      local.get $src
      i32.load8_u
      i32.const 46
      i32.eq
      i32.and
      if
        local.get $o
        i32.const 46
        i32.store8
        local.get $o
        i32.const 1
        i32.add
        local.set $o
      end
    end
    block $done
      loop $next
        local.get $end
        local.get $i
        i32.sub
        i32.const 16
        i32.ge_u
        if
          ;; A whole block. m: its LFs; j: the first one (16 if none); has: 1 if there is one.
          local.get $i
          v128.load
          local.tee $v
          local.get $lf
          i8x16.eq
          i8x16.bitmask
          local.tee $m
          i32.const 65536
          i32.or
          i32.ctz
          local.set $j
          local.get $m
          i32.const 0
          i32.ne
          local.set $has
          ;; ins: 1 if a CR goes in before the LF (none before it). Read even without an LF, then ignored.
          local.get $has
          local.get $i
          local.get $j
          i32.add
          i32.const 1
          i32.sub
          i32.load8_u
          i32.const 13
          i32.ne
          i32.and
          local.set $ins
          ;; The general step is needed for: two LFs or more, the chunk's first block (its byte before is prev),
          ;; or a '.' after the LF.
          local.get $m
          local.get $m
          i32.const 1
          i32.sub
          i32.and
          local.get $i
          local.get $src
          i32.eq
          i32.or
          local.get $has
          local.get $i
          local.get $j
          i32.add
          i32.const 1
          i32.add
          i32.load8_u
          i32.const 46
          i32.eq
          i32.and
          i32.or
          i32.eqz
          if
            ;; The block, then a CR at j and the block from the LF on, one further. Without a CR to insert, j is
            ;; taken as 16: the CR and the second store land past the 16 bytes and the next block covers them.
            local.get $j
            i32.const 16
            local.get $ins
            select
            local.set $j
            local.get $o
            local.get $v
            v128.store
            local.get $o
            local.get $j
            i32.add
            i32.const 13
            i32.store8
            local.get $o
            local.get $j
            i32.add
            i32.const 1
            i32.add
            local.get $i
            local.get $j
            i32.add
            v128.load
            v128.store
            local.get $i
            i32.const 16
            i32.add
            local.set $i
            local.get $o
            i32.const 16
            i32.add
            local.get $ins
            i32.add
            local.set $o
            br $next
          end
          local.get $o
          local.get $v
          v128.store
          local.get $m
          i32.eqz
          if
            local.get $i
            i32.const 16
            i32.add
            local.set $i
            local.get $o
            i32.const 16
            i32.add
            local.set $o
            br $next
          end
          ;; The bytes before the first LF are in place; go to the LF (it is overwritten below).
          local.get $m
          i32.ctz
          local.tee $b
          local.get $i
          i32.add
          local.set $i
          local.get $o
          local.get $b
          i32.add
          local.set $o
        else
          ;; Fewer than 16 bytes left: one at a time.
          local.get $i
          local.get $end
          i32.eq
          br_if $done
          local.get $i
          i32.load8_u
          local.tee $b
          i32.const 10
          i32.ne
          if
            local.get $o
            local.get $b
            i32.store8
            local.get $i
            i32.const 1
            i32.add
            local.set $i
            local.get $o
            i32.const 1
            i32.add
            local.set $o
            br $next
          end
        end
        ;; An LF at i. The byte before it: prev for the first byte of the chunk.
        local.get $i
        local.get $src
        i32.eq
        if
          local.get $prev
          local.set $b
        else
          local.get $i
          i32.const 1
          i32.sub
          i32.load8_u
          local.set $b
        end
        local.get $b
        i32.const 13
        i32.ne
        if
          local.get $o
          i32.const 13
          i32.store8
          local.get $o
          i32.const 1
          i32.add
          local.set $o
        end
        local.get $o
        i32.const 10
        i32.store8
        local.get $o
        i32.const 1
        i32.add
        local.set $o
        local.get $i
        i32.const 1
        i32.add
        local.set $i
        ;; The next line starts here; a '.' first in it gets another (at the chunk's end, the next chunk does it).
        local.get $i
        local.get $end
        i32.lt_u
        if
          local.get $i
          i32.load8_u
          i32.const 46
          i32.eq
          if
            local.get $o
            i32.const 46
            i32.store8
            local.get $o
            i32.const 1
            i32.add
            local.set $o
          end
        end
        br $next
      end
    end
    local.get $o
    local.get $dst
    i32.sub
  )
)
