//! The few socket options sluice needs that tokio and std do not offer.
#![allow(unsafe_code)]

use std::{io, os::fd::AsRawFd};

use crate::InterceptError;

fn setsockopt_int(fd: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a live i32 and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `IP_TRANSPARENT` (and `IPV6_TRANSPARENT` for IPv6 sockets): lets the
/// gateway listener accept flows addressed to the database's address and
/// answer from it.
pub fn set_transparent(fd: &impl AsRawFd, ipv6: bool) -> Result<(), InterceptError> {
    let r = if ipv6 {
        setsockopt_int(fd, libc::SOL_IPV6, libc::IPV6_TRANSPARENT, 1)
    } else {
        setsockopt_int(fd, libc::SOL_IP, libc::IP_TRANSPARENT, 1)
    };
    r.map_err(|source| InterceptError::Socket {
        what: "IP_TRANSPARENT (needs CAP_NET_ADMIN)",
        source,
    })
}

/// `IPV6_V6ONLY`: the IPv6 listener must not claim the IPv4 port too.
pub fn set_v6only(fd: &impl AsRawFd) -> Result<(), InterceptError> {
    setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1).map_err(|source| {
        InterceptError::Socket {
            what: "IPV6_V6ONLY",
            source,
        }
    })
}

/// Index of interface `name` in the caller's network namespace.
pub(crate) fn if_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// Name of interface `index` in the caller's network namespace (sysfs may
/// belong to another namespace, so ask the kernel).
pub(crate) fn if_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes the call may write.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// `SO_MARK`: the jump-host programs leave sockets with the upstream mark alone.
pub fn set_mark(fd: &impl AsRawFd, mark: u32) -> Result<(), InterceptError> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK, mark as i32).map_err(|source| {
        InterceptError::Socket {
            what: "SO_MARK (needs CAP_NET_ADMIN)",
            source,
        }
    })
}

/// The cookie of the network namespace `fd` lives in (`SO_NETNS_COOKIE`).
pub fn netns_cookie(fd: &impl AsRawFd) -> Result<u64, InterceptError> {
    const SO_NETNS_COOKIE: i32 = 71;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are live and `len` is the buffer's size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            std::ptr::from_mut(&mut cookie).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(cookie)
    } else {
        Err(InterceptError::Socket {
            what: "SO_NETNS_COOKIE",
            source: io::Error::last_os_error(),
        })
    }
}
