# CPython C-API declarations the compiled twins use that Cython's own ``cpython/*.pxd`` lack; only
# what we use.

from cpython.object cimport PyObject


cdef extern from "Python.h":
    # Storage types of the PEP 393 kinds: the scanners are written once over the fused ``ucs_t`` and
    # read a string's buffer directly.
    ctypedef unsigned char Py_UCS1  # PyUnicode_1BYTE_KIND (latin-1 range)
    ctypedef unsigned short Py_UCS2  # PyUnicode_2BYTE_KIND (BMP)
    bint PyUnicode_IS_ASCII(object text)


cdef extern from "structmember.h":
    # A ``__slots__`` entry of a Python class is a member descriptor over a PyMemberDef; storing through
    # it with PyMember_SetOne fills a freshly allocated value object without the attribute lookup and
    # the Python ``__init__`` frame.
    ctypedef struct PyMemberDef:
        int type
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    int PyMember_SetOne(char* addr, PyMemberDef* member, object value) except -1
    enum: T_OBJECT_EX  # the member type of every ``__slots__`` entry


ctypedef fused ucs_t:
    Py_UCS1
    Py_UCS2
    Py_UCS4


cdef inline PyMemberDef* slot_member(object cls, str name, tuple all_names) except NULL:
    """The PyMemberDef behind ``cls.<name>``, a ``__slots__`` entry (ImportError otherwise).

    ``all_names`` are the slots the caller fills: if the class gained, lost or reordered one, the
    compiled twin must not import (the dispatcher then falls back to the pure twin, which calls the
    constructor).
    """
    from types import MemberDescriptorType
    if tuple(cls.__slots__) != all_names:
        raise ImportError(f"{cls.__module__}.{cls.__qualname__}.__slots__ changed: {cls.__slots__!r}")
    descr = cls.__dict__.get(name)
    if type(descr) is not MemberDescriptorType or (<PyMemberDescrObject*>descr).d_member.type != T_OBJECT_EX:
        raise ImportError(f"{cls.__module__}.{cls.__qualname__}.{name} is not a __slots__ member")
    return (<PyMemberDescrObject*>descr).d_member
