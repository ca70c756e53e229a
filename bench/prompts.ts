// The benchmark prompt set (Spec-Bench's protocol adapted to a model trained on Python's sources and
// documentation): categories, a few prompts each. The conformance suite uses the same prompts.
import type { ChatMessage } from '../src/engine/types.ts';

export type Category = 'code' | 'copy' | 'qa' | 'open' | 'chat';

export const PROMPTS: Record<Exclude<Category, 'chat'>, string[]> = {
  code: [
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    'class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n',
    'import os\nimport sys\n\n\ndef main(argv):\n    parser = argparse.ArgumentParser(',
    'def read_config(path):\n    with open(path) as f:\n',
    'def is_prime(n):\n    if n < 2:\n        return False\n',
    'class Point:\n    """A point in the plane."""\n\n    def __init__(self, x, y):\n',
  ],
  copy: [
    'The following code is repeated exactly.\n\ndef add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\nRepeated:\n\ndef add(a, b):\n',
    'Original: The socket module provides access to the BSD socket interface. It is available on all modern Unix systems, Windows, MacOS, and probably additional platforms.\nRewrite: The socket module provides',
    'def parse(data):\n    result = []\n    for line in data.splitlines():\n        key, value = line.split("=")\n        result.append((key.strip(), value.strip()))\n    return result\n\n\n# the same function with a docstring\ndef parse(data):\n    """Parse key=value lines."""\n    result = []\n',
    'Summary of: "The json module exposes an API familiar to users of the standard library marshal and pickle modules. Encoding basic Python object hierarchies is done with json.dumps."\nSummary: The json module',
    'Rewrite the list in the same order.\n\nitems = ["alpha", "beta", "gamma", "delta", "epsilon"]\n\nRewritten:\n\nitems = ["alpha",',
    'Original: The os.path module implements some useful functions on pathnames. To read or write files see open(), and for accessing the filesystem see the os module.\n\nCopy: The os.path module implements',
  ],
  qa: [
    '>>> What does the len() function return?\n',
    'Q: How do I open a file for reading in Python?\nA:',
    'Question: What is the difference between a list and a tuple?\nAnswer:',
    'Q: What does the zip() function do?\nA:',
    '>>> How do you reverse a list?\n',
    'Question: What is a decorator in Python?\nAnswer:',
  ],
  open: [
    'The history of the Python programming language',
    'In this tutorial we will',
    'Introduction\n============\n\n',
    'The following example shows how to',
    'Chapter 1. Getting started\n\n',
    'Note that this module',
  ],
};

export const CHATS: ChatMessage[][] = [
  [
    { role: 'user', content: 'sorted([3, 1, 2])' },
    { role: 'assistant', content: '[1, 2, 3]' },
    { role: 'user', content: 'sorted([3, 1, 2], reverse=True)' },
  ],
  [
    { role: 'system', content: 'Python 3.11 interactive session.' },
    { role: 'user', content: 'import math' },
    { role: 'assistant', content: '' },
    { role: 'user', content: 'math.sqrt(16)' },
  ],
  [
    { role: 'user', content: 'len("hello")' },
    { role: 'assistant', content: '5' },
    { role: 'user', content: 'len([1, 2, 3])' },
  ],
  [
    { role: 'system', content: 'You answer questions about Python.' },
    { role: 'user', content: 'What is a dictionary?' },
  ],
  [
    { role: 'user', content: 'import json' },
    { role: 'assistant', content: '' },
    { role: 'user', content: 'json.dumps({"a": 1})' },
  ],
  [{ role: 'user', content: 'How do I read a file line by line?' }],
];
